"""Count where secret values (and a non-secret marker) occur, for molecule/shapes.

usage: python3 scan_secrets.py SECRETS_JSON MARKER OUT_JSON PLACE=PATH [PLACE=PATH ...]

SECRETS_JSON is {name: value}. PATH is a file or a directory (every file under it, read as bytes),
or several of them separated by commas.
Each value is looked for as it is and as base64 in each of the three alignments (a value inside a
slurp or a copied file shows up base64-encoded in -vvv output). OUT_JSON gets, per place, the files
and bytes read, the hits per secret name, the marker's hits and the files holding a secret.
"""

import base64
import json
import os
import sys


def base64_forms(value):
    """The base64 text that encodes `value` whatever bytes come before it (3 alignments)."""
    raw = value.encode()
    forms = []
    for pad in range(3):
        encoded = base64.b64encode(b'\0' * pad + raw).decode()
        first = -(-pad // 3)                       # first 4-char group made only of value bytes
        last = (pad + len(raw)) // 3               # groups that end inside the value
        text = encoded[first * 4:last * 4]
        if len(text) >= 16:
            forms.append(text.encode())
    return forms


def files_of(paths):
    found = []
    for path in paths.split(','):
        found.extend(files_under(path))
    return found


def files_under(path):
    if os.path.isfile(path):
        return [path]
    found = []
    for root, _dirs, names in os.walk(path):
        for name in sorted(names):
            full = os.path.join(root, name)
            if os.path.isfile(full) and not os.path.islink(full):
                found.append(full)
    return sorted(found)


def main(argv):
    secrets_file, marker, out_file = argv[1:4]
    with open(secrets_file) as handle:
        secrets = json.load(handle)
    needles = {name: [value.encode()] + base64_forms(value) for name, value in secrets.items()}
    report = {'secrets': sorted(secrets), 'marker_length': len(marker), 'places': {}}
    for spec in argv[4:]:
        place, path = spec.split('=', 1)
        entry = {'path': path, 'exists': all(os.path.exists(p) for p in path.split(',')), 'files': 0, 'bytes': 0,
                 'hits': {name: 0 for name in secrets}, 'marker': 0, 'files_with_secrets': []}
        for name in files_of(path) if entry['exists'] else []:
            with open(name, 'rb') as handle:
                data = handle.read()
            entry['files'] += 1
            entry['bytes'] += len(data)
            entry['marker'] += data.count(marker.encode())
            holds = False
            for secret, forms in needles.items():
                count = sum(data.count(form) for form in forms)
                entry['hits'][secret] += count
                holds = holds or count > 0
            if holds:
                entry['files_with_secrets'].append(name)
        report['places'][place] = entry
    with open(out_file, 'w') as handle:
        json.dump(report, handle, indent=2, sort_keys=True)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))

# Stand-in for ansible-test's get-pip bootstrap script.
#
# ansible-test downloads its pip bootstrap from a CI file host that these
# machines cannot reach; scripts/sanity seeds this file into ansible-test's
# cache under the name it looks for. It bootstraps pip from the interpreter's
# own ensurepip, then installs what ansible-test asked for (e.g. pip==24.2)
# from the package index, trusting the system CA bundle.
import ensurepip
import os
import subprocess
import sys

ensurepip.bootstrap()
args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
cert = os.environ.get('PIP_CERT') or '/etc/ssl/certs/ca-certificates.crt'
sys.exit(subprocess.call([sys.executable, '-m', 'pip', 'install', '--cert', cert] + args))

-- v2: backward compatible (a nullable column and a new table): v1's code runs unchanged on it,
-- which is what makes a rollback from v2 to v1 safe.
ALTER TABLE items ADD COLUMN note text;
CREATE TABLE item_tags (
    item_id bigint NOT NULL REFERENCES items (id) ON DELETE CASCADE,
    tag text NOT NULL,
    PRIMARY KEY (item_id, tag)
);

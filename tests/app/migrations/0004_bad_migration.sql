-- bad-migration: the first statement works, the second fails, and the whole
-- migration is rolled back (it runs in one transaction): the schema stays at 0003.
ALTER TABLE items ADD COLUMN priority integer;
ALTER TABLE no_such_table ADD COLUMN broken boolean;

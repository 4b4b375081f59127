-- A 16 MiB value inserted, then updated: the update's record carries both
-- images, 32 MiB.
INSERT INTO big VALUES (10, UNHEX(REPEAT('5A', 16 * 1024 * 1024)), NULL);
UPDATE big SET b = UNHEX(REPEAT('C3', 16 * 1024 * 1024)), t = 'small now' WHERE id = 1;
UPDATE big SET b = UNHEX(REPEAT('00', 8 * 1024 * 1024)) WHERE id = 2;
DELETE FROM big WHERE id = 3;
UPDATE wide SET a = REPEAT('z', 65000), b = REPEAT('y', 500) WHERE id = 2;
DELETE FROM wide WHERE id = 1;
-- Beyond the 16 MiB packet size: a 24 MiB value, updated (a 48 MiB record).
INSERT INTO big VALUES (11, UNHEX(REPEAT('11', 24 * 1024 * 1024)), NULL);
UPDATE big SET b = UNHEX(REPEAT('22', 24 * 1024 * 1024)) WHERE id = 11;

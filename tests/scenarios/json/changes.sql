INSERT INTO js VALUES (10, JSON_OBJECT('k', REPEAT('v', 100000)), JSON_ARRAY(1, 'two', NULL));
UPDATE js SET doc = JSON_SET(doc, '$.a', 2), meta = '{"updated": true}' WHERE id = 1;
UPDATE js SET doc = NULL WHERE id = 2;
DELETE FROM js WHERE id = 3;

INSERT INTO s VALUES
  (10, 'new', '🚀 新しい 😀', 'x', 'y', 'z', 'w', REPEAT('🎉', 100000), 'àéîõü', 'Ø', 'ascii'),
  (11, NULL, 'only v', NULL, NULL, NULL, NULL, NULL, CHAR(0x81, 0x90 USING latin1), NULL, NULL);
UPDATE s SET c = 'changed', v = CONCAT(v, ' ✓'), vbin = 'case', tt = 'tt2', t = REPEAT('t', 60000),
  mt = REPEAT('😀', 1000), lt = NULL, l1 = 'naïve', l1c = 'ÿ', a = '' WHERE id = 1;
UPDATE s SET v = 'it''s "quoted" \\ and \0 zero' WHERE id = 2;
DELETE FROM s WHERE id = 3;
UPDATE skey SET k = 'ABC' WHERE v = 1;
UPDATE skey SET k = 'zoe' WHERE v = 2;
DELETE FROM skey WHERE v = 4;
INSERT INTO skey VALUES ('', 5);

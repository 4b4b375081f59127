INSERT INTO cc VALUES
  (10, REPEAT('binlog ', 25), REPEAT('ü', 1500), 'tiny', REPEAT('text ', 1000),
      REPEAT('m', 100000), REPEAT(0x55aa, 5000), REPEAT(0x0102, 600000), REPEAT(0x00, 250), 'x'),
  (11, '', NULL, '', 'a', '', '', NULL, '', '');
INSERT INTO cc (id, b, vb) SELECT 12, CONCAT(REPEAT(0xff, 100), UNHEX(GROUP_CONCAT(LPAD(HEX(seq), 2, '0') ORDER BY seq SEPARATOR ''))), UNHEX(GROUP_CONCAT(LPAD(HEX(seq), 2, '0') ORDER BY seq SEPARATOR '')) FROM seq_0_to_255;
UPDATE cc SET v = REPEAT('updated ', 20), t = 'now short', lb = REPEAT(0x11, 70000), l = 'ö' WHERE id = 3;
UPDATE cc SET v = 'b', mt = REPEAT('grown ', 2000) WHERE id = 2;
-- The zlib wrapper on: another header bit.
SET SESSION column_compression_zlib_wrap = ON;
INSERT INTO cc (id, v, t, b) VALUES (13, REPEAT('wrapped ', 20), REPEAT('wrapped text ', 300), REPEAT(0x77, 4000));
UPDATE cc SET mt = REPEAT('wrapped update ', 700) WHERE id = 10;
SET SESSION column_compression_zlib_wrap = DEFAULT;
DELETE FROM cc WHERE id = 1;

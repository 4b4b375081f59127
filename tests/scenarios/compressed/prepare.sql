-- MariaDB's compressed columns: VARCHAR (1- and 2-byte lengths), TEXT and
-- BLOB sizes, values short enough to be stored uncompressed (header 0) and
-- long ones stored compressed, with and without the zlib wrapper; a plain
-- latin1 column after them checks that the binlog's character set metadata
-- stays aligned.
CREATE TABLE cc (
  id INT PRIMARY KEY,
  v VARCHAR(200) COMPRESSED,
  vl VARCHAR(2000) COMPRESSED CHARACTER SET utf8mb4,
  tt TINYTEXT COMPRESSED,
  t TEXT COMPRESSED,
  mt MEDIUMTEXT COMPRESSED,
  b BLOB COMPRESSED,
  lb LONGBLOB COMPRESSED,
  vb VARBINARY(300) COMPRESSED,
  l VARCHAR(20) CHARACTER SET latin1
);
INSERT INTO cc VALUES
  (1, '', '', '', '', '', '', '', '', 'é'),
  (2, 'a', 'é', 'x', 'short', 'm', 0x00, 0xff, 0x01, 'latin1 ü'),
  (3, REPEAT('compress me ', 16), REPEAT('日本語テキスト ', 100), REPEAT('t', 200),
      REPEAT('a long text value ', 500), REPEAT('mediumtext ', 3000),
      REPEAT(0x000102030405060708090a0b0c0d0e0f, 64), REPEAT(0xdeadbeef, 100000),
      REPEAT(0xab, 300), 'after'),
  (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
-- Every byte value, compressed and not.
INSERT INTO cc (id, b, vb) SELECT 5, CONCAT(REPEAT(0x00, 100), UNHEX(GROUP_CONCAT(LPAD(HEX(seq), 2, '0') ORDER BY seq SEPARATOR ''))), UNHEX(GROUP_CONCAT(LPAD(HEX(seq), 2, '0') ORDER BY seq SEPARATOR '')) FROM seq_0_to_255;

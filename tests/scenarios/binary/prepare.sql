-- Binary data: every byte value, BINARY padding, every BLOB size.
CREATE TABLE bin (
  id INT PRIMARY KEY,
  b BINARY(16), vb VARBINARY(300), tb TINYBLOB, bl BLOB, mb MEDIUMBLOB, lb LONGBLOB,
  cb CHAR(10) CHARACTER SET binary
);
INSERT INTO bin SELECT 1, UNHEX('00FF00FF'), UNHEX(REPLACE(GROUP_CONCAT(LPAD(HEX(seq), 2, '0') ORDER BY seq), ',', '')),
  UNHEX('00'), UNHEX(REPEAT('FF00', 1000)), UNHEX(REPEAT('DEADBEEF', 100000)), UNHEX(REPEAT('0001', 500000)), UNHEX('2000')
  FROM seq_0_to_255;
INSERT INTO bin VALUES
  (2, '', '', '', '', '', '', ''),
  (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (4, UNHEX('00000000000000000000000000000000'), UNHEX('20'), UNHEX('0A0D5C27'), 'text as blob', 'é', '😀', 'x');
-- A binary primary key.
CREATE TABLE binkey (k VARBINARY(16) PRIMARY KEY, v INT);
INSERT INTO binkey VALUES (UNHEX('00'), 1), (UNHEX('FF'), 2), (UNHEX('0000'), 3), ('', 4);

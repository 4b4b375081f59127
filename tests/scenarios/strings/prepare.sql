-- Character data: utf8mb4 (emoji, CJK, combining marks), latin1, binary
-- collations, every TEXT size, CHAR padding, escapes.
CREATE TABLE s (
  id INT PRIMARY KEY,
  c CHAR(10), v VARCHAR(300), vbin VARCHAR(50) COLLATE utf8mb4_bin,
  tt TINYTEXT, t TEXT, mt MEDIUMTEXT, lt LONGTEXT,
  l1 VARCHAR(100) CHARACTER SET latin1, l1c CHAR(5) CHARACTER SET latin1 COLLATE latin1_bin,
  a VARCHAR(20) CHARACTER SET ascii
) DEFAULT CHARSET = utf8mb4;
INSERT INTO s VALUES
  (1, 'abc', 'héllo wörld 😀🎉 你好世界 こんにちは 안녕하세요', 'Case', 'tiny', 'text', 'medium', 'long',
      'café ÿ ñ € ‚ ƒ „ … † ‡ ˆ ‰ Š ‹ Œ Ž', 'Ü', 'plain'),
  (2, '', '', '', '', '', '', '', '', '', ''),
  (3, '  pad  ', 'tab\there\nnewline\r\\back\\slash ''quote'' "dq" \0nul \Zctrl', 'CASE', REPEAT('x', 255),
      REPEAT('日本', 10000), REPEAT('m', 200000), REPEAT('🙂', 300000), REPEAT('é', 100), 'abcde', '~!@#$%^&*()'),
  (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (5, 'e\u0301', 'e\u0301 combining', 'a', 'b', 'c', 'd', 'e', CONCAT('x', CHAR(0x80, 0x8D, 0x9F, 0xFF USING latin1)), 'z', 'y');
-- A string primary key with a case-insensitive collation.
CREATE TABLE skey (k VARCHAR(20) PRIMARY KEY, v INT) DEFAULT CHARSET = utf8mb4 COLLATE utf8mb4_general_ci;
INSERT INTO skey VALUES ('abc', 1), ('Zoë', 2), ('日本', 3), ('', 4);

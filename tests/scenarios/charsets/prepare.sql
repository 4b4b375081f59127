-- Character sets other than utf8mb4: the binlog carries each column's own
-- bytes, which the source decodes.
CREATE TABLE cs (
  id INT PRIMARY KEY,
  l1 VARCHAR(50) CHARACTER SET latin1,
  l2 VARCHAR(50) CHARACTER SET latin2,
  w1251 VARCHAR(50) CHARACTER SET cp1251,
  k8 VARCHAR(50) CHARACTER SET koi8r,
  gr VARCHAR(50) CHARACTER SET greek,
  sj VARCHAR(50) CHARACTER SET sjis,
  ej VARCHAR(50) CHARACTER SET ujis,
  kr VARCHAR(50) CHARACTER SET euckr,
  gb VARCHAR(50) CHARACTER SET gbk,
  b5 VARCHAR(50) CHARACTER SET big5,
  u2 VARCHAR(50) CHARACTER SET ucs2,
  u16 VARCHAR(50) CHARACTER SET utf16,
  u16le VARCHAR(50) CHARACTER SET utf16le,
  u32 VARCHAR(50) CHARACTER SET utf32,
  a VARCHAR(50) CHARACTER SET ascii
);
INSERT INTO cs VALUES (1, 'àéîõü €', 'Zażółć gęślą', 'Привет, мир', 'Привет', 'Καλημέρα', 'こんにちは 表', 'こんにちは', '안녕하세요', '你好世界', '你好世界', 'ÅΩ€', 'héllo 😀', 'héllo 😀', 'héllo 😀', 'plain');
INSERT INTO cs VALUES (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);

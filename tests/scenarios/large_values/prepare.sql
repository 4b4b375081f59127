-- Large values: a 16 MiB LONGBLOB, a row near the maximum row size.
CREATE TABLE big (id INT PRIMARY KEY, b LONGBLOB, t LONGTEXT);
INSERT INTO big VALUES (1, UNHEX(REPEAT('A5', 16 * 1024 * 1024)), REPEAT('é', 1000000)),
  (2, '', ''), (3, NULL, NULL);
-- 65,535 bytes is the largest a row's non-BLOB columns may take.
CREATE TABLE wide (id INT PRIMARY KEY, a VARCHAR(65000) CHARACTER SET latin1, b VARCHAR(500) CHARACTER SET latin1);
INSERT INTO wide VALUES (1, REPEAT('a', 65000), REPEAT('b', 500)), (2, REPEAT('x', 100), NULL);

CREATE TABLE t (id INT PRIMARY KEY, a VARCHAR(20), b INT);
INSERT INTO t VALUES (1, 'one', 1), (2, 'two', 2), (3, 'three', 3);

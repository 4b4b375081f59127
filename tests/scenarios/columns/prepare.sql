-- Column features: NULLs, DEFAULTs, AUTO_INCREMENT, stored and virtual
-- generated columns, INVISIBLE columns, composite keys, a table whose only
-- key is UNIQUE NOT NULL, and a table without any key.
CREATE TABLE feat (
  id INT AUTO_INCREMENT PRIMARY KEY,
  qty INT NOT NULL DEFAULT 1,
  price DECIMAL(8,2) NOT NULL DEFAULT 9.99,
  total DECIMAL(12,2) AS (qty * price) STORED,
  label VARCHAR(40) AS (CONCAT('x', qty)) VIRTUAL,
  secret VARCHAR(20) INVISIBLE DEFAULT 'hidden',
  created DATETIME(6) NOT NULL DEFAULT '2020-01-01 00:00:00',
  note TEXT NULL,
  KEY (label)
);
INSERT INTO feat (qty, price, note) VALUES (2, 3.50, 'a'), (5, DEFAULT, NULL);
INSERT INTO feat (qty, secret) VALUES (7, 'shown');
INSERT INTO feat () VALUES ();
CREATE TABLE comp (a INT NOT NULL, b VARCHAR(10) NOT NULL, c DATE NOT NULL, v INT, PRIMARY KEY (a, b, c));
INSERT INTO comp VALUES (1, 'x', '2024-01-01', 1), (1, 'x', '2024-01-02', 2), (1, 'y', '2024-01-01', 3), (2, 'x', '2024-01-01', 4);
CREATE TABLE uonly (code CHAR(5) NOT NULL, n INT NULL, payload VARCHAR(50), UNIQUE KEY (code), UNIQUE KEY (n));
INSERT INTO uonly VALUES ('A', 1, 'first'), ('B', NULL, 'second'), ('C', 3, 'third');
CREATE TABLE nokey (a INT, b VARCHAR(10), c BLOB, d DOUBLE);
INSERT INTO nokey VALUES (1, 'dup', NULL, 0.1), (1, 'dup', NULL, 0.1), (2, NULL, UNHEX('00'), NULL), (NULL, NULL, NULL, NULL);

-- FLOAT and DOUBLE, including values no short decimal represents exactly.
CREATE TABLE fl (
  id INT PRIMARY KEY,
  f FLOAT, d DOUBLE, fu FLOAT UNSIGNED, f72 FLOAT(7,2), d155 DOUBLE(15,5)
);
INSERT INTO fl VALUES
  (1, 0.1, 0.1, 0.1, 12345.67, 1234567890.12345),
  (2, 3.4028234e38, 1.7976931348623157e308, 1.17549435e-38, -99999.99, -9999999999.99999),
  (3, -3.4028234e38, -1.7976931348623157e308, 0, 0, 0),
  (4, 1.401298e-45, 4.9406564584124654e-324, 1e-10, 0.01, 0.00001),
  (5, 1/3, 1/3, 2/3, 1/3, 1/3),
  (6, NULL, NULL, NULL, NULL, NULL),
  (7, -0.0, -0.0, 0, -0.01, -0.00001),
  (8, 16777217, 9007199254740993, 3.14159265, 3.14, 3.14159);
-- Many pseudo-random values.
INSERT INTO fl SELECT 100 + seq, RAND(seq) * POW(10, CAST(seq % 30 AS SIGNED) - 15), RAND(seq + 1) * POW(10, CAST(seq % 300 AS SIGNED) - 150),
  RAND(seq + 2), RAND(seq + 3) * 1000, RAND(seq + 4) * 100000 FROM seq_1_to_500;
-- A keyless table with floats: updates and deletes match the whole row.
CREATE TABLE fl_nokey (f FLOAT, d DOUBLE, tag VARCHAR(10));
INSERT INTO fl_nokey VALUES (0.1, 0.1, 'a'), (1/3, 1/3, 'b'), (NULL, NULL, 'c'), (3.4028234e38, 1e-300, 'd');

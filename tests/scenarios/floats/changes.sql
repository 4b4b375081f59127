INSERT INTO fl SELECT 1000 + seq, RAND(seq * 7) * POW(10, CAST(seq % 30 AS SIGNED) - 15), RAND(seq * 7 + 1) * POW(10, CAST(seq % 300 AS SIGNED) - 150),
  RAND(seq * 7 + 2), RAND(seq * 7 + 3) * 1000, RAND(seq * 7 + 4) * 100000 FROM seq_1_to_300;
UPDATE fl SET f = f * 3, d = d / 7, fu = fu / 3, f72 = f72 / 3, d155 = d155 / 3 WHERE id BETWEEN 100 AND 200 OR id IN (1, 5, 8);
UPDATE fl SET f = NULL, d = 2.2250738585072014e-308 WHERE id = 6;
DELETE FROM fl WHERE id = 3;
UPDATE fl_nokey SET tag = 'a2' WHERE tag = 'a';
UPDATE fl_nokey SET f = 2/3 WHERE tag = 'b';
DELETE FROM fl_nokey WHERE tag = 'd';
INSERT INTO fl_nokey VALUES (0.3, 0.3, 'e');

SELECT COUNT(*) = 3 FROM fl_nokey WHERE tag IN ('a2', 'b', 'c')
SELECT d = 2.2250738585072014e-308 FROM fl WHERE id = 6

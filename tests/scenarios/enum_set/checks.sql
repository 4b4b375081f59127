SELECT e = 'medium' AND s = 'ünïcode' AND s64 = 'b63' FROM es WHERE id = 1
SELECT ee = '' AND ee + 0 = 1 FROM es WHERE id = 2

SELECT e = 'medium' AND s = 'ünïcode' AND s64 = 'b63' FROM es WHERE id = 1
SELECT ee = '' AND ee + 0 = 1 FROM es WHERE id = 2
SELECT GROUP_CONCAT(id, ':', e + 0, ':', IFNULL(n + 0, 'N') ORDER BY id) = '1:2:2,2:1:0,3:0:N,4:0:0,5:1:1' FROM eerr
SELECT GROUP_CONCAT(e + 0, ':', v ORDER BY v) = '0:2,0:10' FROM eerr_nokey

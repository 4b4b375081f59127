INSERT INTO es VALUES (10, 'large', 'b', 'write,exec', 'b10,b20,b30,b40,b50,b60', 'on');
UPDATE es SET e = 'medium', ee = 'a', s = 'ünïcode', s64 = 'b63', en = 'on' WHERE id = 1;
UPDATE es SET e = NULL, ee = '', s = '', s64 = '' WHERE id = 2;
DELETE FROM es WHERE id = 3;
UPDATE eskey SET k = 'b' WHERE v = 1;

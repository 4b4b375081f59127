INSERT INTO bits VALUES (10, 1, 64, 128, 256, 32768, 65536, 1, 1, 1, 1, 1);
UPDATE bits SET b1 = 1, b7 = 1, b8 = 1, b9 = 1, b16 = 1, b17 = 1, b31 = 1, b32 = 1, b33 = 1, b63 = 1, b64 = 18446744073709551614 WHERE id = 1;
UPDATE bits SET b64 = NULL, b1 = 0 WHERE id = 2;
DELETE FROM bits WHERE id = 3;
UPDATE bitkey SET k = 4095 - k WHERE v = 3;
DELETE FROM bitkey WHERE v = 1;

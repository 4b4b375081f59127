INSERT INTO net VALUES (10, '1.2.3.4', '::1', UUID()), (11, '8.8.8.8', '2001:4860:4860::8888', '6ccd780c-baba-1026-9564-5b8c656024dc');
UPDATE net SET i4 = '4.3.2.1', i6 = '2001:db8::1', u = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11' WHERE id = 1;
UPDATE net SET u = '6ccd780c-baba-1026-9564-5b8c656024db' WHERE id = 2;
DELETE FROM net WHERE id = 3;
UPDATE uuidkey SET k = 'c3bd6d7e-1d3b-11ef-8000-0242ac120002' WHERE v = 3;
DELETE FROM uuidkey WHERE v = 1;

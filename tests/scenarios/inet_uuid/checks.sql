SELECT u = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11' FROM net WHERE id = 1
SELECT u = '6ccd780c-baba-1026-9564-5b8c656024db' AND i6 = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff' FROM net WHERE id = 2
SELECT i6 = '::ffff:10.0.0.1' FROM net WHERE id = 4

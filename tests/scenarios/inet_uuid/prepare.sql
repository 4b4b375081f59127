-- INET4, INET6 and UUID.
CREATE TABLE net (
  id INT PRIMARY KEY,
  i4 INET4, i6 INET6, u UUID
);
INSERT INTO net VALUES
  (1, '0.0.0.0', '::', '00000000-0000-0000-0000-000000000000'),
  (2, '255.255.255.255', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'ffffffff-ffff-ffff-ffff-ffffffffffff'),
  (3, '192.168.1.10', '2001:db8::8a2e:370:7334', '6ccd780c-baba-1026-9564-5b8c656024db'),
  (4, '10.0.0.1', '::ffff:10.0.0.1', '123e4567-e89b-42d3-a456-426614174000'),
  (5, NULL, NULL, NULL),
  (6, '127.0.0.1', 'fe80::1', 'c3bd6d7e-1d3b-11ef-8000-0242ac120002');
CREATE TABLE uuidkey (k UUID PRIMARY KEY, v INT);
INSERT INTO uuidkey VALUES ('6ccd780c-baba-1026-9564-5b8c656024db', 1), ('123e4567-e89b-42d3-a456-426614174000', 2),
  ('00000000-0000-0000-0000-000000000001', 3);

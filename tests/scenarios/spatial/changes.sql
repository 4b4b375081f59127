INSERT INTO geo VALUES (10, ST_GeomFromText('LINESTRING(5 5, 6 6)', 4326), ST_GeomFromText('POINT(9 9)'), NULL, NULL, NULL, NULL, NULL, NULL,
  ST_GeomFromText('POINT(-0.12 51.5)', 4326));
UPDATE geo SET g = ST_GeomFromText('POINT(3 4)'), p = ST_GeomFromText('POINT(5 6)'),
  l = ST_GeomFromText('LINESTRING(1 1, 2 2)'), pg = NULL, pr = ST_GeomFromText('POINT(1 1)', 4326) WHERE id = 1;
DELETE FROM geo WHERE id = 3;

-- Spatial types, with and without an SRID.
CREATE TABLE geo (
  id INT PRIMARY KEY,
  g GEOMETRY, p POINT, l LINESTRING, pg POLYGON,
  mp MULTIPOINT, ml MULTILINESTRING, mpg MULTIPOLYGON, gc GEOMETRYCOLLECTION,
  pr POINT REF_SYSTEM_ID = 4326
);
INSERT INTO geo VALUES
  (1, ST_GeomFromText('POINT(1 2)'), ST_GeomFromText('POINT(-71.06 42.35)'),
      ST_GeomFromText('LINESTRING(0 0, 1 1, 2 2)'), ST_GeomFromText('POLYGON((0 0, 10 0, 10 10, 0 10, 0 0), (2 2, 3 2, 3 3, 2 2))'),
      ST_GeomFromText('MULTIPOINT(1 1, 2 2)'), ST_GeomFromText('MULTILINESTRING((0 0, 1 1), (2 2, 3 3))'),
      ST_GeomFromText('MULTIPOLYGON(((0 0, 1 0, 1 1, 0 0)), ((5 5, 6 5, 6 6, 5 5)))'),
      ST_GeomFromText('GEOMETRYCOLLECTION(POINT(1 1), LINESTRING(0 0, 1 1))'),
      ST_GeomFromText('POINT(2.35 48.85)', 4326)),
  (2, ST_GeomFromText('POLYGON((0 0, 1 0, 1 1, 0 0))', 3857), NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (3, ST_GeomFromText('POINT(1e300 -1e-300)'), ST_GeomFromText('POINT(0 0)'), NULL, NULL, NULL, NULL, NULL,
      ST_GeomFromText('GEOMETRYCOLLECTION EMPTY'), NULL);

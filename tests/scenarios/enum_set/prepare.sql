-- ENUM and SET: labels (with quotes, commas, non-ASCII), the empty-string member.
CREATE TABLE es (
  id INT PRIMARY KEY,
  e ENUM('small', 'medium', 'large', 'it''s', 'x,y', 'é€'),
  ee ENUM('', 'a', 'b'),
  s SET('read', 'write', 'exec', 'ünïcode'),
  s64 SET('b00','b01','b02','b03','b04','b05','b06','b07','b08','b09','b10','b11','b12','b13','b14','b15',
          'b16','b17','b18','b19','b20','b21','b22','b23','b24','b25','b26','b27','b28','b29','b30','b31',
          'b32','b33','b34','b35','b36','b37','b38','b39','b40','b41','b42','b43','b44','b45','b46','b47',
          'b48','b49','b50','b51','b52','b53','b54','b55','b56','b57','b58','b59','b60','b61','b62','b63'),
  en ENUM('on', 'off') NOT NULL DEFAULT 'off'
);
INSERT INTO es VALUES
  (1, 'small', '', '', '', 'on'),
  (2, 'it''s', 'a', 'read,write', 'b00,b63', 'off'),
  (3, 'x,y', 'b', 'read,write,exec,ünïcode', 'b01,b02,b31,b32,b62', 'on'),
  (4, 'é€', NULL, NULL, NULL, 'off'),
  (5, NULL, '', 'exec', 'b40', DEFAULT);
CREATE TABLE eskey (k ENUM('a', 'b', 'c') PRIMARY KEY, v INT);
INSERT INTO eskey VALUES ('a', 1), ('c', 3);
-- The ENUM error value: the empty string of index 0, which a non-strict
-- session stores for a value that is not a member (a strict destination
-- refuses both '' and 0 for it). Keyed and keyless tables.
SET SESSION sql_mode = '';
CREATE TABLE eerr (id INT PRIMARY KEY, e ENUM('x', 'y') NOT NULL, n ENUM('p', 'q') NULL, v INT);
INSERT INTO eerr VALUES (1, 'nope', 'q', 1), (2, 'x', 'bad', 2), (3, 'y', NULL, 3);
CREATE TABLE eerr_nokey (e ENUM('x', 'y'), v INT);
INSERT INTO eerr_nokey VALUES ('invalid', 1), ('x', 2);
SET SESSION sql_mode = DEFAULT;

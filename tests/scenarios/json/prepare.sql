-- JSON (MariaDB's LONGTEXT with a JSON_VALID check): the text arrives unchanged.
CREATE TABLE js (id INT PRIMARY KEY, doc JSON, meta JSON NOT NULL DEFAULT '{}');
INSERT INTO js VALUES
  (1, '{"a": 1, "b": [1, 2, 3], "c": {"d": null}}', '{}'),
  (2, '{"z":1,"a":2}', '[]'),
  (3, '  {"spaces" :  true ,  "unicode": "😀 \\u00e9" }  ', '"string"'),
  (4, NULL, '123.4500'),
  (5, '[1e400, -0, 0.1000]', 'null');

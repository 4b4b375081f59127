CREATE TABLE k (id INT NOT NULL, code VARCHAR(10) NOT NULL, v INT, note TEXT);
INSERT INTO k VALUES (1, 'a', 1, 'x'), (2, 'b', 2, 'y');
CREATE TABLE parent (id INT PRIMARY KEY);
INSERT INTO parent VALUES (1), (2);

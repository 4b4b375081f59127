CREATE TABLE p (id INT PRIMARY KEY, s VARCHAR(20), n INT) CHARACTER SET latin1;
INSERT INTO p VALUES (1, 'é', 1), (2, 'b', 2);
-- Synchronized at start: a child table named (and so created) before the
-- table its foreign key references; CHECK, FULLTEXT, SPATIAL, row format,
-- AUTO_INCREMENT start, column collation, partitioning.
SET SESSION foreign_key_checks = 0;
CREATE TABLE a_child (id INT PRIMARY KEY, pid INT, note TEXT, pt POINT NOT NULL, CONSTRAINT fk_parent FOREIGN KEY (pid) REFERENCES b_parent (id), CONSTRAINT chk_pid CHECK (pid > 0), FULLTEXT KEY ft (note), SPATIAL KEY sp (pt)) ENGINE=InnoDB ROW_FORMAT=COMPACT;
CREATE TABLE b_parent (id INT AUTO_INCREMENT PRIMARY KEY, s VARCHAR(10) CHARACTER SET latin1 COLLATE latin1_bin DEFAULT 'x') AUTO_INCREMENT=1000;
CREATE TABLE c_part (id INT PRIMARY KEY, v INT) PARTITION BY KEY (id) PARTITIONS 2;
INSERT INTO c_part VALUES (1, 1), (2, 2), (3, 3);
SET SESSION foreign_key_checks = 1;
INSERT INTO b_parent VALUES (1000, 'p');
INSERT INTO a_child VALUES (1, 1000, 'hello world', ST_GeomFromText('POINT(1 1)'));

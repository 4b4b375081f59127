-- A small sample database for the quickstart: customers, products, orders
-- and order lines (a composite key), a few thousand rows in all.
DROP DATABASE IF EXISTS shop;
CREATE DATABASE shop;
USE shop;

CREATE TABLE customers (
  id INT AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(100) NOT NULL,
  email VARCHAR(200) NULL UNIQUE,
  country CHAR(2) NOT NULL,
  created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
);

CREATE TABLE products (
  sku CHAR(10) PRIMARY KEY,
  title VARCHAR(200) NOT NULL,
  price DECIMAL(10,2) NOT NULL,
  stock INT UNSIGNED NOT NULL DEFAULT 0,
  picture BLOB NULL
);

CREATE TABLE orders (
  id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY,
  customer_id INT NOT NULL,
  status ENUM('new','paid','shipped','cancelled') NOT NULL DEFAULT 'new',
  placed_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  FOREIGN KEY (customer_id) REFERENCES customers (id)
);

CREATE TABLE order_lines (
  order_id BIGINT UNSIGNED NOT NULL,
  line SMALLINT NOT NULL,
  sku CHAR(10) NOT NULL,
  qty INT NOT NULL,
  PRIMARY KEY (order_id, line)
);

INSERT INTO customers (name, email, country, created_at)
SELECT CONCAT('Customer ', seq), CONCAT('c', seq, '@example.com'),
       ELT(1 + seq % 4, 'FR', 'DE', 'JP', 'BR'), '2024-01-01' + INTERVAL seq HOUR
FROM seq_1_to_1000;

INSERT INTO products (sku, title, price, stock, picture)
SELECT CONCAT('P', LPAD(seq, 9, '0')), CONCAT('Product nº', seq, ' – ', REPEAT('★', seq % 5)),
       ROUND(seq * 1.37, 2), seq % 90, IF(seq % 3 = 0, UNHEX(SHA2(seq, 256)), NULL)
FROM seq_1_to_500;

INSERT INTO orders (customer_id, status, placed_at)
SELECT 1 + seq % 1000, ELT(1 + seq % 4, 'new', 'paid', 'shipped', 'cancelled'),
       '2024-06-01' + INTERVAL seq MINUTE
FROM seq_1_to_2000;

INSERT INTO order_lines (order_id, line, sku, qty)
SELECT o.seq, l.seq, CONCAT('P', LPAD(1 + (o.seq * l.seq) % 500, 9, '0')), l.seq
FROM seq_1_to_2000 o, seq_1_to_3 l;

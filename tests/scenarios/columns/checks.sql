SELECT total = 42.00 AND label = 'x12' AND secret = 'changed' FROM feat WHERE id = 1
SELECT COUNT(*) = 1 FROM feat WHERE id = 101
SELECT COUNT(*) = 2 FROM nokey WHERE a = 1 AND b = 'dup'
SELECT AUTO_INCREMENT >= 102 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'feat'

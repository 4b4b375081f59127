SELECT v = 'héllo wörld 😀🎉 你好世界 こんにちは 안녕하세요 ✓' FROM s WHERE id = 1
SELECT HEX(l1) = HEX(CONVERT('naïve' USING latin1)) FROM s WHERE id = 1
SELECT k = 'ABC' COLLATE utf8mb4_bin FROM skey WHERE v = 1
SELECT LENGTH(lt) = 400000 FROM s WHERE id = 10

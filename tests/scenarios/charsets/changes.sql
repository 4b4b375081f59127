INSERT INTO cs VALUES (10, 'naïve', 'Łódź', 'Ёжик', 'Ёжик', 'Ωμέγα', 'ソ表能', '漢字', '한국어', '中文', '中文', '∑', '𝄞 clef', '𝄞 clef', '𝄞 clef', '~');
UPDATE cs SET l1 = 'ÿ', l2 = 'ő', w1251 = 'ы', k8 = 'ы', gr = 'ά', sj = '十', ej = '十', kr = '십', gb = '十', b5 = '十', u2 = 'ü', u16 = '😀', u16le = '😀', u32 = '😀', a = 'z' WHERE id = 1;
UPDATE cs SET l1 = 'now set' WHERE id = 2;

SELECT w1251 = 'Ёжик' AND sj = 'ソ表能' AND u32 = '𝄞 clef' FROM cs WHERE id = 10

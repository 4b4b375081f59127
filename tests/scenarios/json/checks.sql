SELECT doc = '[1e400, -0, 0.1000]' FROM js WHERE id = 5

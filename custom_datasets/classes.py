"""The class names of each dataset, in label order (index = label value in
the converted label maps). Kept apart from the dataset classes so that code
that only needs the names does not import MMSegmentation."""

FASHIONISTA_CLASSES = (
    'background', 'skin', 'hair', 'bag', 'belt', 'boots', 'coat', 'dress',
    'glasses', 'gloves', 'hat/headband', 'jacket/blazer', 'necklace',
    'pants/jeans', 'scarf/tie', 'shirt/blouse', 'shoes', 'shorts', 'skirt',
    'socks', 'sweater/cardigan', 'tights/leggings', 'top/t-shirt', 'vest',
    'watch/bracelet')

CFPD_CLASSES = (
    'bk', 'T-shirt', 'bag', 'belt', 'blazer', 'blouse', 'coat', 'dress',
    'face', 'hair', 'hat', 'jeans', 'legging', 'pants', 'scarf', 'shoe',
    'shorts', 'skin', 'skirt', 'socks', 'stocking', 'sunglass', 'sweater')

CCP_CLASSES = (
    'null', 'accessories', 'bag', 'belt', 'blazer', 'blouse', 'bodysuit',
    'boots', 'bra', 'bracelet', 'cape', 'cardigan', 'clogs', 'coat', 'dress',
    'earrings', 'flats', 'glasses', 'gloves', 'hair', 'hat', 'heels',
    'hoodie', 'intimate', 'jacket', 'jeans', 'jumper', 'leggings', 'loafers',
    'necklace', 'panties', 'pants', 'pumps', 'purse', 'ring', 'romper',
    'sandals', 'scarf', 'shirt', 'shoes', 'shorts', 'skin', 'skirt',
    'sneakers', 'socks', 'stockings', 'suit', 'sunglasses', 'sweater',
    'sweatshirt', 'swimwear', 't-shirt', 'tie', 'tights', 'top', 'vest',
    'wallet', 'watch', 'wedges')

"""Class orders by where a class is worn on the body, head to feet, as the
paper orders its confusion matrices (Figure 3); background first."""
from typing import List, Sequence

# Each dataset's classes (custom_datasets.classes), head to feet.
BODY_ORDERS = (
    # Refined Fashionista
    (
        'background', 'hair', 'hat/headband', 'glasses', 'skin', 'scarf/tie',
        'necklace', 'shirt/blouse', 'top/t-shirt', 'sweater/cardigan', 'vest',
        'jacket/blazer', 'coat', 'dress', 'watch/bracelet', 'gloves', 'bag',
        'belt', 'skirt', 'shorts', 'pants/jeans', 'tights/leggings', 'socks',
        'boots', 'shoes'),
    # CFPD
    (
        'bk', 'hair', 'hat', 'sunglass', 'face', 'skin', 'scarf', 'T-shirt',
        'blouse', 'sweater', 'blazer', 'coat', 'dress', 'bag', 'belt',
        'skirt', 'shorts', 'pants', 'jeans', 'legging', 'stocking', 'socks',
        'shoe'),
    # CCP
    (
        'null', 'hair', 'hat', 'earrings', 'sunglasses', 'glasses', 'skin',
        'tie', 'scarf', 'necklace', 'bra', 'intimate', 'swimwear', 'bodysuit',
        'top', 't-shirt', 'shirt', 'blouse', 'sweater', 'sweatshirt',
        'hoodie', 'cardigan', 'jumper', 'vest', 'blazer', 'jacket', 'suit',
        'coat', 'cape', 'dress', 'romper', 'watch', 'bracelet', 'ring',
        'gloves', 'bag', 'purse', 'wallet', 'accessories', 'belt', 'panties',
        'skirt', 'shorts', 'pants', 'jeans', 'leggings', 'tights',
        'stockings', 'socks', 'boots', 'clogs', 'flats', 'heels', 'loafers',
        'pumps', 'sandals', 'sneakers', 'wedges', 'shoes'),
)


def body_order(classes: Sequence[str]) -> List[int]:
    """Indices of ``classes`` from head to feet; the given order for a
    class list that is none of the harness's datasets."""
    order = next((order for order in BODY_ORDERS
                  if sorted(order) == sorted(classes)), None)
    if order is None:
        return list(range(len(classes)))
    return [list(classes).index(name) for name in order]

# FashionistaDataset: the layout written by
#   python tools/convert_data.py fashionista --src RAW --out data/fashionista
_base_ = ['./fashion_parsing.py']
dataset_type = 'FashionistaDataset'
data_root = 'data/fashionista'
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))

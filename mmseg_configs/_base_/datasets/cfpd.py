# CFPDDataset: the layout written by
#   python tools/convert_data.py cfpd --src RAW --out data/cfpd
_base_ = ['./fashion_parsing.py']
dataset_type = 'CFPDDataset'
data_root = 'data/cfpd'
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))

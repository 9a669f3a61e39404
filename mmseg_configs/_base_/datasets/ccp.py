# CCPDataset: the layout written by
#   python tools/convert_data.py ccp --src RAW --out data/ccp
_base_ = ['./fashion_parsing.py']
dataset_type = 'CCPDataset'
data_root = 'data/ccp'
train_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
val_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))
test_dataloader = dict(dataset=dict(type=dataset_type, data_root=data_root))

"""tinybert.convert: bring models and configs over from the seed system (MindSpore TinyBERT).

ms_checkpoint reads MindSpore `.ckpt` files without MindSpore; mindspore maps the seed's parameter
names onto our BERT and writes a Hugging Face model directory; mindspore_config turns the seed's YAML
configs into ours.
"""

"""tinybert.distill"""

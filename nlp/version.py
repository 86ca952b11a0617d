"""The labeler's version, recorded in every labels table it writes (a light import)."""
LABELER_VERSION = "radsim-nlp 1.1.0"  # 1.1.0: certainty grades, the issue-22 language classes

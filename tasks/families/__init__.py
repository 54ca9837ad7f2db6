"""Task halves shared by two tasks, never run with `python -m`: `seq2seq` (the encoder-decoder
half of translation and summarization) and `extractive` (summarization's sentence scorer)."""

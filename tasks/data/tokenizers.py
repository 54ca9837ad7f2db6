"""Subword tokenizers learned on the training split: SentencePiece BPE, in Python and in the graph.

    proto = learn_sentencepiece(train_texts, vocabulary_size=4000, special_tokens=True)
    codec = SentencePieceCodec(proto)
    ids = codec.encode_batch(tf.constant(["Ein Hund läuft."]))    # (B, None) ragged int32
    codec.decode_batch(ids)                                       # (B,) tf.string, round trip

One way for every text task: text generation learns a model on its running text; translation and
summarization learn one on the training pairs (one model for both sides, or one per side). The
same keras-hub `SentencePieceTokenizer` (a tensorflow-text op) runs in `tf.data`, in evaluation
and inside the exported SavedModel, so the three never disagree.

Text goes in as it is (no normalization, whitespace kept), so decoding the ids of a text gives the
text back whenever every character was seen in training. A newline travels as `NEWLINE_SYMBOL`.
Pieces that map to `<unk>` (characters never seen in training) are dropped, and the Python side
says which characters they were.
"""

import io

import numpy as np
import tensorflow as tf

from tasks.core.errors import UserError

# SentencePiece trains on lines; a newline inside the text is this visible symbol instead.
NEWLINE_SYMBOL = "\u21b5"
# The ids of the special tokens of models learned with `special_tokens=True` (seq2seq).
PAD_ID, UNKNOWN_ID, START_ID, END_ID = 0, 1, 2, 3


def learn_sentencepiece(text, vocabulary_size, special_tokens=False, max_sentences=300_000, seed=0):
    """A SentencePiece BPE model, keeping whitespace as it is; returns the proto bytes.

    Args:
        text: str or list of str. Running text (one training line per line, each ending in
            `NEWLINE_SYMBOL`) or a list of texts (one training line each; inner newlines become
            `NEWLINE_SYMBOL`).
        vocabulary_size: int. Pieces in the model, the special tokens included.
        special_tokens: bool. Reserve `<pad>`=0, `<unk>`=1, `<s>`=2, `</s>`=3 (sequence to sequence);
            otherwise only `<pad>`=0 and `<unk>`=1. Defaults to False.
        max_sentences: int. Lines sampled for training when there are more. Defaults to 300,000.
        seed: int. The sampling seed. Defaults to 0.
    """
    import sentencepiece

    if isinstance(text, str):
        lines = [line + NEWLINE_SYMBOL for line in text.split("\n")]
    else:
        lines = [item.replace("\n", NEWLINE_SYMBOL) for item in text if item]
    if len(lines) > max_sentences:
        keep = np.random.default_rng(seed).choice(len(lines), max_sentences, replace=False)
        lines = [lines[i] for i in np.sort(keep)]
    model = io.BytesIO()
    ids = {"pad_id": 0, "unk_id": 1, "bos_id": -1, "eos_id": -1}
    if special_tokens:
        ids.update(bos_id=START_ID, eos_id=END_ID)
    try:
        sentencepiece.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=model, vocab_size=vocabulary_size,
            model_type="bpe", character_coverage=1.0, normalization_rule_name="identity",
            add_dummy_prefix=False, remove_extra_whitespaces=False, split_digits=True,
            max_sentence_length=1 << 16, minloglevel=2, **ids,
        )
    except RuntimeError as error:
        raise UserError(
            f"--vocabulary-size {vocabulary_size}: SentencePiece cannot learn it from this text: "
            f"{str(error).splitlines()[-1]}"
        )
    return model.getvalue()


class SentencePieceCodec:
    """SentencePiece pieces ↔ ids; newlines travel as `NEWLINE_SYMBOL`, `<unk>` pieces are dropped.

    Args:
        proto: bytes. A serialized SentencePiece model.
    """

    def __init__(self, proto):
        import keras_hub
        import tensorflow_text  # noqa: F401  (registers the SentencePiece ops)

        self.proto = proto
        self.tokenizer = keras_hub.tokenizers.SentencePieceTokenizer(proto=proto)
        self.unknown_id = self.tokenizer.token_to_id("<unk>")
        self._characters = None

    @property
    def vocabulary_size(self):
        return int(self.tokenizer.vocabulary_size())

    def _prepare(self, text):
        return tf.strings.regex_replace(text, "\n", NEWLINE_SYMBOL)

    # === One running text (text generation) ===

    def encode(self, text):
        ids = tf.cast(self.tokenizer(self._prepare(text)), tf.int32)
        return tf.boolean_mask(ids, ids != self.unknown_id)

    def decode(self, ids):
        return tf.strings.regex_replace(self.tokenizer.detokenize(ids), NEWLINE_SYMBOL, "\n")

    def encode_numpy(self, text):
        lines = text.split("\n")
        pieces = [line + NEWLINE_SYMBOL for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
        rows = self.tokenizer(tf.constant(pieces or [""]))  # eagerly: one list of ids per line
        ids = np.concatenate([np.asarray(row, np.int32).reshape(-1) for row in rows])
        known = ids != self.unknown_id
        return ids[known], ["<unk>"] * int((~known).sum())

    def decode_numpy(self, ids):
        return self.decode(tf.constant(ids, tf.int32)).numpy().decode("utf-8")

    # === A batch of texts (sequence to sequence) ===

    def encode_batch(self, texts):
        """Texts (B,) tf.string → ids (B, None) ragged int32, `<unk>` pieces dropped. Graph-safe."""
        ids = self.tokenizer(self._prepare(texts))
        ids = tf.cast(ids if isinstance(ids, tf.RaggedTensor) else tf.ragged.constant(ids), tf.int32)
        return tf.ragged.boolean_mask(ids, ids != self.unknown_id)

    def decode_batch(self, ids):
        """Ids (B, None) ragged or (B, L) dense int32 → texts (B,) tf.string. Graph-safe.

        Dense rows stop at the first end token; special tokens are never written out.
        """
        ids = tf.convert_to_tensor(ids) if not isinstance(ids, tf.RaggedTensor) else ids
        if not isinstance(ids, tf.RaggedTensor):
            before_end = tf.cumsum(tf.cast(ids == END_ID, tf.int32), axis=1, exclusive=True) == 0
            ids = tf.ragged.boolean_mask(ids, before_end)
        ids = tf.ragged.boolean_mask(ids, ids > END_ID)  # no pad, unk, start or end pieces
        texts = self.tokenizer.detokenize(ids)
        return tf.strings.regex_replace(texts, NEWLINE_SYMBOL, "\n")

    def encode_texts(self, texts, batch_size=4096):
        """A list of str → list of int32 arrays (eagerly, in chunks)."""
        result = []
        for start in range(0, len(texts), batch_size):
            ids = _encode_chunk(self, tf.constant(texts[start:start + batch_size]))
            values, lengths = ids.flat_values.numpy(), ids.row_lengths().numpy()
            result.extend(np.split(values, np.cumsum(lengths)[:-1]) if len(lengths) else [])
        return result

    def decode_texts(self, rows):
        """A list of int id sequences (or a (B, L) array) → list of str."""
        if len(rows) == 0:
            return []
        ragged = tf.ragged.constant([np.asarray(row, np.int32).tolist() for row in rows], dtype=tf.int32)
        return [text.decode("utf-8") for text in _decode_chunk(self, ragged).numpy()]

    # === Characters never seen in training ===

    def unknown_characters(self, text):
        """The characters of `text` the model reads as `<unk>`, in order of first appearance."""
        if self._characters is None:
            self._characters = set()
            for index in range(self.vocabulary_size):
                piece = self.tokenizer.id_to_token(index)
                if not (piece.startswith("<") and piece.endswith(">")):
                    self._characters.update(piece)
        # Pieces write a space as U+2581 and a newline as NEWLINE_SYMBOL.
        spelled = {" ": "\u2581", "\n": NEWLINE_SYMBOL}
        return list(dict.fromkeys(char for char in text if spelled.get(char, char) not in self._characters))


@tf.function(reduce_retracing=True)
def _encode_chunk(codec, texts):
    return codec.encode_batch(texts)


@tf.function(reduce_retracing=True)
def _decode_chunk(codec, ids):
    return codec.decode_batch(ids)

"""Model compression that ends on the engine: pruning, channel pruning, low-rank factorisation,
trained ternary quantization and Deep Compression's weight sharing with Huffman coding.

``radix compress`` (:mod:`radix.compress.cli`) applies the methods in the order given and writes
a self-contained model file (:mod:`radix.compress.model_file`) that every radix command accepts
as MODEL. The storage codec (:mod:`radix.compress.storage`) needs numpy alone: the ``.radix``
artifact uses it for compressed weights, and the board reads them. Every other module of this
package imports torch (host only). docs/compression.md describes the methods and the formats.
"""

from ..errors import InputError


class CompressionError(InputError):
    """A compression option, method order or model that cannot be used; the message names it."""

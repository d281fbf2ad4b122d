"""The engine's own exceptions, so callers can tell bad input from bugs."""


class CodecError(ValueError):
    """A codec spec, rate or payload the engine cannot honour; the message names the bad part."""


class CodecUnavailable(CodecError):
    """The codec exists in the grammar but its library is missing on this machine."""


class DecodeError(CodecError):
    """Bytes that do not decode: corrupt, truncated or of another codec."""

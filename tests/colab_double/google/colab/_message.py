"""``google.colab._message.MessageError`` as Colab defines it (a RuntimeError raised when the browser side
refuses a request, e.g. Drive access)."""


class MessageError(RuntimeError):
    """Thrown on an error response from the frontend (as in colabtools)."""

"""Self-supervised losses (contrastive and others), one loss per module."""
from jaxrep.ssl.infonce import infonce_loss, make_infonce_loss

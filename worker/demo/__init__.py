"""Parts of `finsignal demo`: its services, the output reader, the bookkeeping and the views."""

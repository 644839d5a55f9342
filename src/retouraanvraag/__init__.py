"""retouraanvraag: return requests for any web shop."""

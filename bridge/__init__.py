"""The bridge: CRM ticket events (Salesforce Cases) become CCAI Platform SMS, and the outcome lands on the ticket."""

__version__ = "0.1.0"

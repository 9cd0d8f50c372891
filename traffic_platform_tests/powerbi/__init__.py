"""Tests of the Power BI project in powerbi/ (PBIP: TMDL semantic model + PBIR report)."""

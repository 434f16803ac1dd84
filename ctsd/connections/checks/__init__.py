"""Connection tests ("key checks"): does a stored key work on its exchange, and how well?

    tester.py        ConnectionTester: the steps of one test, under one deadline
    run.py           TestRun: one running test's log, findings and result
    probe.py         ExchangeProbe: the questions a test asks the exchange (a Protocol)
    results.py       TestResult, LogLine, TestStatus: what a test produces
    batch.py         BatchProcessor: jobs through shared, prioritised worker slots
    batch_tester.py  BatchTester: many connections at once, shared keys tested once
    service.py       ConnectionTests: the use cases the API calls; stores each result
"""

# The ACL policy of bootforge-fleet's workload identity: dispatch the builder job and follow
# the jobs it dispatched. Attach it to the job (not to a token):
#
#   nomad acl policy apply -namespace default -job bootforge-fleet \
#     bootforge-fleet ci/nomad/bootforge-fleet.policy.hcl
#
# For a fleet in another namespace, name that namespace here and in -namespace.
namespace "default" {
  capabilities = ["dispatch-job", "read-job", "list-jobs"]
}
